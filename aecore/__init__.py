"""aecore: the autoencoder laboratory without a user interface. Its folders are floors; imports point down only.

engine/ — data, models, the training loop, and what reads or writes a model (imports nothing above it)
    data          MNIST / Fashion-MNIST IDX files as uint8 tensors, noise, deformation, `to_float` (to [0, 1])
    fetch         downloads with mirrors and checksums; `fetch.load` downloads on a miss for callers that ask
    models/       `build`, `batched` (inference batch by batch) and the public names; `base` (ModelConfig, the
                  plain families), `vae` (variational)
    train         TrainConfig, RunSpec, the `fit` generator, evaluation
    checkpoint    safetensors checkpoints with JSON metadata (never unpickled); `ModelEntry`, a model and its record
    trainstate    a training caught at an epoch's end (weights, optimiser, generators, timeline), to resume it
    replay        a run's small per-epoch snapshots (reconstructions, first layer, codes) under a size bound
    scoring       reconstruction errors, quantiles, code sparsity
    preprocess    drawings and uploads to MNIST form
    images        a folder or zip of one's own pictures as a data set; the refusals (archive: a zip's checks)
    viz           tile grids, latent plots, charts, the palettes
    presets       the tutorials' experiments and their figures; `versus`, a tutorial's figure beside ours
    fields        the one table of settings: each one's name, label, range, and the families that use it
    links         a configuration as a shareable query string

runs/ — the run service: the only thing that starts a training (see runs/__init__)
    registry, queue, backend, job (threads), process (processes), task (a lab's work as a run: TaskSpec),
    store/ (runs, classes kept across restarts: SQLite or PostgreSQL; `python -m aecore.runs list`), keeping,
    cluster + relay + directory (Ray), settings,
    bench (`python -m aecore.runs.bench`)

labs/ — experiments on the engine, training through the run service
    anomaly       one-class detectors and the Draw page's digit detector (`python -m aecore.labs.anomaly`)
    generative    likelihoods, sampling, interpolation, decoded grids
    likelihood    a VAE's test likelihood (`python -m aecore.labs.likelihood`)
    classifier    the digit judge (`python -m aecore.labs.classifier`); digitcnn: its network and training
    drawset       the drawing set that measures the Draw verdict; drawset2: a second, independent one
    compare       runs and models side by side
    studies       several runs in one click, PCA (`python -m aecore.labs.studies`)
    pretrain      few labels: the command line and results; fewlabels: the experiment
    precomputed   figures of the shipped models computed ahead (`python -m aecore.labs.precomputed`)
    pictures      anomaly detection on one's own pictures: the scores, PCA floor, thresholds, recipes;
                  picturerun: the detector run on an MVTec-layout set (also as a run: `detection_spec`);
                  pictureviews: what the Your images page draws of a set and a detection
    pictureset    a generated MVTec-layout set from Fashion-MNIST (`python -m aecore.labs.pictureset OUT`)
    classroom     a class: its challenge, codes and secrets, nicknames, scoring, the board

export/ — take a run home, beside the labs (the engine only below it; `python -m aecore.export`)
    code + layers + snippets   a run as a standalone training script or notebook (torch and numpy only)
    toonnx        the model, its encoder or decoder as ONNX (onnx imported only then)
    page          the model as one offline HTML page, with a JavaScript forward pass of its own
    tutorials     the tutorial presets' scripts (docs/takehome/) and their measured reproduction

entry points (top floor) — command lines and benchmarks, nothing imports them
    train         `python -m aecore.train`: train a preset or a custom model
    bench         `python -m aecore.bench`: fit against the tutorial pipeline and the GEMM floor
    loadtest      `python -m aecore.loadtest`: many browser sessions against one server
    classload     `python -m aecore.classload`: a class of student sessions training while its board renders
    pagetimes     `python -m aecore.pagetimes`: each page's time to show, on a fresh server and warm
    browse        the server and browser driver the last two share
    anomaly       `python -m aecore.anomaly --folder PATH`: a detector on one's own MVTec-layout pictures

argv — command-line helpers every command shares (a leaf)

Importing the package does no work; import the module you need.
"""
