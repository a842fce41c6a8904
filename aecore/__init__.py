"""aecore: the autoencoder laboratory's engine, with no user interface.

Modules: data (MNIST / Fashion-MNIST IDX files, noise), models (shallow, deep, conv autoencoders),
train (the `fit` generator, configs, `python -m aecore.train`), job (a run in a background thread),
presets (the tutorials' experiments), checkpoint (safetensors save/load), scoring (reconstruction errors),
preprocess (drawings and uploads to MNIST form), viz (tile grids, latent plots, charts), cli, bench.
Importing the package does no work; import the module you need.
"""
