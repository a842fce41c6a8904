"""The labs: experiments built on the engine, training through the run service. Nothing below imports a lab."""
