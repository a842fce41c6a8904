"""aecore: the autoencoder laboratory's engine: data, models, training, checkpoints, scoring and visuals.

Modules: data (MNIST / Fashion-MNIST IDX files, noise), models (shallow, deep, conv autoencoders),
train (the `fit` generator, configs, CLI entry), presets (the tutorials' experiments), checkpoint
(safetensors save/load), scoring (reconstruction errors), bench (speed against the tutorial pipeline).
Importing the package does no work; import the module you need.
"""
