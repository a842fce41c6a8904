"""What the pages share; nothing here is a page (those are app_pages/, framed by app.py). A page imports the
modules it needs (`from ui import caches, session`) and calls through them, so a test patches one place.

- `caches`: what the server loads once and every visitor reads: data set splits, shipped models and detectors,
  test-set scores, the one download per data set (`st.cache_resource`, never modified).
- `server`: the server's one run registry (aecore.runs), configured by the AELAB_* settings.
- `session`: this visitor's state: the run a page shows and its `?run=` link, the session's models, the active
  model and its description, and `cached`, the one bounded per-session store of what a page computed.
- `panels`: pieces of page in the same words everywhere: the download panel, a run's submission and its place in
  the queue, readable sliders.
- `form`: a configuration's widgets, drawn from the settings table (aecore.engine.fields), keyed by field name.
- `pictures`: each visitor's own picture sets (kept in their folder, never shown to another visitor) and what the
  Your images page draws of them.
- `datasets`: the images a model learned, for the pages that show it: MNIST's from `caches`, a picture set from
  the visitor's own shelf only (`pictures`).
- `guide`: each page's line and its "What am I looking at?" expander, texts in `guides/<page>.md`.

Arrows point down only: app.py → app_pages → ui → aecore; nothing here imports a page.
"""
