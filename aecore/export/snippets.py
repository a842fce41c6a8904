"""The fixed parts of an exported script: reading the data, the deformation, evaluation and the main function.

Each mirrors its AE Lab original line for line where the numbers depend on it (the order of random draws, the
float32 sums): `aecore.engine.data` (read_idx, split, deform) and `aecore.engine.train` (fit, evaluate).
"""
from __future__ import annotations

from aecore.engine.data import DEFORM_AT_1
from aecore.engine.models import ModelConfig
from aecore.engine.train import RunSpec

IDX_CODE = '''def read_idx(path):
    """One IDX file (gzipped or not) as a uint8 array: a 4-byte magic number, the sizes, then the bytes."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"{{folder / stem}}[.gz] not found: --data-dir names the folder holding the four IDX files")


def load_split(folder, prefix):
    """uint8 pictures (N, 28, 28) and int64 labels (N,)."""
    images = read_idx(find(folder, f"{{prefix}}-images-idx3-ubyte"))
    labels = read_idx(find(folder, f"{{prefix}}-labels-idx1-ubyte"))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_data(folder):
    """(train, held-out or None, test) pictures, as AE Lab splits them."""
    train_x, train_y = load_split(folder, "train")
    test_x, test_y = load_split(folder, "t10k")
{filter}'''

PICTURES_CODE = '''def load_data(path):
    """(train, held-out or None, test) pictures from the prepared set: uint8 (N, S, S) grey or (N, 3, S, S)."""
    with np.load(path, allow_pickle=False) as z:
        train_x, train_y = torch.from_numpy(z["train_images"]), torch.from_numpy(z["train_labels"]).long()
        test_x, test_y = torch.from_numpy(z["test_images"]), torch.from_numpy(z["test_labels"]).long()
{filter}'''

DEFORM_CODE = f'''DEFORM_AT_1 = {DEFORM_AT_1!r}   # Simard et al. 2003's values


def gaussian_blur(field, sigma):
    """Blur (C, 1, H, W) maps with a separable Gaussian of `sigma` pixels, reflecting at the edges."""
    r = min(int(3 * sigma), field.shape[-1] - 1)
    t = torch.arange(-r, r + 1, device=field.device, dtype=field.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    field = F.conv2d(F.pad(field, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(field, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def deform(x, level, gen):
    """Warp each picture by its own random turn, scaling, shift and elastic bend (bilinear, black edges)."""
    if level == 0:
        return x
    at1 = DEFORM_AT_1
    b, side, dev = len(x), x.shape[-1], x.device
    draw = lambda *shape: torch.rand(*shape, device=dev, generator=gen) * 2 - 1   # noqa: E731  U[-1, 1)
    angle = draw(b) * math.radians(level * at1["degrees"])
    scale = 1 + draw(b) * level * at1["scale"]
    unit = 2 / side                                                    # one pixel in [-1, 1] grid units
    dx, dy = draw(b) * level * at1["pixels"] * unit, draw(b) * level * at1["pixels"] * unit
    # affine_grid wants where each output pixel reads from: A = R(-angle) / scale, t = -A (dx, dy)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, sin, -(cos * dx + sin * dy)], 1),
                         torch.stack([-sin, cos, -(-sin * dx + cos * dy)], 1)], 1)   # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)   # (B, H, W, 2)
    if at1["elastic"]:
        bend = gaussian_blur(draw(2 * b, 1, side, side), at1["smooth"])   # (2B, 1, H, W)
        grid = grid + bend.view(b, 2, side, side).permute(0, 2, 3, 1) * level * at1["elastic"] * unit
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)'''

CORRUPT = '''def corrupt(x, gen):
    """What the model sees of a clean batch (B, C, S, S); the clean batch stays the target."""
{deform}{noise}'''


def evaluate_code(m: ModelConfig, binarize: bool) -> str:
    draw = ("        x = torch.bernoulli(x, generator=gen)\n" if binarize else "")
    gen = ("    gen = torch.Generator(device=device).manual_seed(0)   # one fixed binarisation\n" if binarize else "")
    return f'''@torch.no_grad()
def evaluate(model, images, batch_size=1000):
    """The mean loss over uint8 pictures, in eval mode; the model goes back to training mode after."""
    device = next(model.parameters()).device
{gen}    model.eval()
    total = torch.zeros((), device=device)
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device))
{draw}        total += model.loss(x, model(x)) * len(x)
    model.train()
    return total.item() / max(len(images), 1)
'''


def main_code(spec: RunSpec, picture_set: bool) -> str:
    t = spec.train
    if picture_set:
        arg = (f'    p.add_argument("--pictures", default={spec.data.images!r},\n'
               '                   help="the picture set AE Lab prepared (.npz)")\n')
        load = "load_data(args.pictures)"
    else:
        arg = '    p.add_argument("--data-dir", required=True, help="the folder holding the four IDX files")\n'
        load = "load_data(Path(args.data_dir))"
    opt = ('    if OPTIMIZER == "rmsprop":            # Keras\'s RMSprop: rho 0.9\n'
           "        optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=0.9, eps=ADAM_EPS)\n"
           "    else:\n"
           "        optimizer = torch.optim.Adam(model.parameters(), lr=LR, eps=ADAM_EPS, fused=True)\n")
    milestones = ('''        if epoch in LR_MILESTONES:
            for group in optimizer.param_groups:
                group["lr"] *= LR_GAMMA
''' if t.lr_milestones else "")
    val = '"val_loss": evaluate(model, val_x), ' if spec.data.val_fraction else ""
    return f'''def main(argv=None):
    p = argparse.ArgumentParser(description={spec.name + ": train it as AE Lab did"!r})
{arg}    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default=DEVICE, help="auto, cpu or cuda")
    args = p.parse_args(argv)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    torch.set_flush_denormal(True)        # as AE Lab: tiny Adam moments become 0 instead of slow subnormals

    train_x, val_x, test_x = {load}
    held_out = val_x if val_x is not None else test_x
    torch.manual_seed(SEED)               # the first weights
    model = Autoencoder().to(device).train()
    gen = torch.Generator(device=device).manual_seed(SEED)   # the shuffling, the noise, the binarisation
    torch.manual_seed(SEED)               # dropout and a VAE's sampling draw from torch's global generator
{opt}    images = train_x.to(device)
    step = 0
    for epoch in range(1, args.epochs + 1):
        train_loss, step = train_epoch(model, optimizer, images, epoch, gen, step)
        if not math.isfinite(train_loss):
            raise SystemExit(f"the loss became {{train_loss}} in epoch {{epoch}}: try a lower learning rate")
{milestones}        record = {{"epoch": epoch, "train_loss": train_loss, "val_loss": evaluate(model, held_out)}}
        print(json.dumps(record), flush=True)
    model.cpu()
    final = {{"train_loss": train_loss, {val}"test_loss": evaluate(model, test_x)}}
    print(json.dumps(final), flush=True)
'''
