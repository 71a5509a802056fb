"""The text of train.py: a fixed template with the project's settings, loss and optimizer filled in."""
import json
import textwrap

from ..seq2seq import START, target_input

# loss -> (fused with the head, function source, accuracy expression or None); the formulas are those of engine/losses.py
LOSS_SRC = {
    ("cce", True): '''def loss_fn(z, y):
    """Categorical cross-entropy from the logits z: (1/B) Σ_i [log Σ_j e^(z_ij) − z_i,y_i]."""
    return F.cross_entropy(z, y)
''',
    ("cce", False): '''def loss_fn(p, y):
    """Categorical cross-entropy −(1/B) Σ_i log p_i,y_i with p clipped to [1e-7, 1] (gradient −1/(B·p) at the clip)."""
    p_y = p.gather(1, y[:, None])[:, 0]
    p_y = p_y + (p_y.clamp(1e-7, 1.0) - p_y).detach()
    return -torch.log(p_y).sum() / len(p)
''',
    ("bce", True): '''def loss_fn(z, y):
    """Binary cross-entropy from the logits z: (1/B) Σ [max(z, 0) − z·y + log(1 + e^(−|z|))]."""
    return F.binary_cross_entropy_with_logits(z, y.reshape(z.shape).to(z.dtype), reduction="sum") / len(z)
''',
    ("bce", False): '''def loss_fn(p, y):
    """Binary cross-entropy −(1/B) Σ [y log p + (1 − y) log(1 − p)] with p clipped to [1e-7, 1 − 1e-7]."""
    y = y.reshape(p.shape).to(p.dtype)
    p = p + (p.clamp(1e-7, 1 - 1e-7) - p).detach()
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).sum() / len(p)
''',
    ("mse", False): '''def loss_fn(out, y):
    """Mean squared error (1/B) Σ_i Σ_k (out_ik − y_ik)²: summed over the outputs, averaged over the batch."""
    return ((out - y.reshape(out.shape)) ** 2).sum() / len(out)
''',
}
LOSS_SRC[("mse", True)] = LOSS_SRC[("mse", False)]

CORRECT = {("cce", True): "(out.argmax(1) == y).sum()", ("cce", False): "(out.argmax(1) == y).sum()",
           ("bce", True): "((out.reshape(len(y), -1)[:, 0] > 0) == (y > 0.5)).sum()",      # logit > 0 ⇔ σ > 0.5
           ("bce", False): "((out.reshape(len(y), -1)[:, 0] > 0.5) == (y > 0.5)).sum()"}

MOMENTUM_SRC = '''class Momentum(torch.optim.Optimizer):
    """v ← βv + η(∇L + λθ), θ ← θ − v, written out: torch.optim.SGD's momentum keeps v/η instead
    (v ← βv + ∇L, θ ← θ − ηv), which is the same only while η never changes."""

    def __init__(self, params, lr, beta):
        super().__init__(params, {"lr": lr, "beta": beta, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad if not group["weight_decay"] else p.grad + group["weight_decay"] * p
                v = self.state[p].setdefault("v", torch.zeros_like(p))
                v.mul_(group["beta"]).add_(g, alpha=group["lr"])
                p.sub_(v)
'''

# optimizer -> (formula, construction); torch.optim's update is the same formula where it is used
OPTIMIZER_SRC = {
    "gd": ("θ ← θ − η(∇L + λθ) on the whole training set per step (torch.optim.SGD's update)",
           'torch.optim.SGD(groups, lr=CONFIG["lr"])'),
    "sgd": ("θ ← θ − η(∇L + λθ) per mini-batch (torch.optim.SGD's update)",
            'torch.optim.SGD(groups, lr=CONFIG["lr"])'),
    "momentum": ("v ← βv + η(∇L + λθ), θ ← θ − v (written out below)",
                 'Momentum(groups, lr=CONFIG["lr"], beta=CONFIG["beta"])'),
    "adagrad": ("G ← G + g⊙g, θ ← θ − ηg/(√G + ε) with g = ∇L + λθ (torch.optim.Adagrad's update: ε outside the root)",
                'torch.optim.Adagrad(groups, lr=CONFIG["lr"], eps=CONFIG["eps"])'),
    "rmsprop": ("G ← βG + (1 − β)g⊙g, θ ← θ − ηg/(√G + ε) with g = ∇L + λθ "
                "(torch.optim.RMSprop's update with α = β: ε outside the root)",
                'torch.optim.RMSprop(groups, lr=CONFIG["lr"], alpha=CONFIG["beta"], eps=CONFIG["eps"])'),
    "adam": ("m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g⊙g, θ ← θ − η m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵏ), v̂ = v/(1 − β₂ᵏ), "
             "g = ∇L + λθ (torch.optim.Adam's update: L2 in the gradient, not AdamW)",
             'torch.optim.Adam(groups, lr=CONFIG["lr"], betas=(CONFIG["beta1"], CONFIG["beta2"]), eps=CONFIG["eps"])'),
}
OPT_KEYS = {"gd": ("lr",), "sgd": ("lr",), "momentum": ("lr", "beta"), "adagrad": ("lr", "eps"),
            "rmsprop": ("lr", "beta", "eps"), "adam": ("lr", "beta1", "beta2", "eps")}

TRAIN = '''"""Train @@NAME@@ with PyTorch as Layerboard trains it; one process or many with DistributedDataParallel.

    python train.py                                  # one process (CPU, or the GPU if there is one)
    torchrun --nproc_per_node=N train.py             # N processes on this machine (gloo on CPU, nccl on CUDA)
    torchrun --nnodes=M --nproc_per_node=N --rdzv-endpoint=HOST:PORT train.py    # M machines

@@DOCS@@
λ (L2 weight decay) applies to the weights in DECAY only, as in Layerboard; batch_size is the global batch,
split across the processes. Prints one JSON line per epoch (like `layerboard train --json`) and writes
checkpoint.safetensors (the model's state_dict, no 'module.' prefix) after every epoch and at the end;
`layerboard import-weights PROJECT --from checkpoint.safetensors -o trained.safetensors` brings it back.
Generated by Layerboard.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from data import augment, load_data
from model import @@CLASS@@

HERE = Path(__file__).resolve().parent
CONFIG = @@CONFIG@@
DECAY = @@DECAY@@   # parameters with L2 weight decay (weights, not biases)
FUSED = @@FUSED@@   # the loss takes the head's input as logits: model(x, return_logits=True)
CLASSIFY = @@CLASSIFY@@
REGRESS = @@REGRESS@@   # targets standardised with the training set's statistics (model.y_mean, model.y_std)
MASKED = @@MASKED@@   # the model reads a (B, T) mask of valid steps: model(x, mask=...)
SEQ2SEQ = @@SEQ2SEQ@@   # an encoder–decoder: model(source, target); the loss counts valid target steps only
START = @@START@@   # <start>: the first token the decoder reads (teacher forcing)
CLIP = @@CLIP@@   # clip_norm c: g ← g·min(1, c/||g||) over all gradients before each step (0: off)
UNSUPPORTED = @@UNSUPPORTED@@   # what this train.py cannot do as Layerboard does (then it refuses to run)


@@LOSS@@

def correct(out, y):
    """Number of correct predictions in the batch."""
    return @@CORRECT@@

@@MOMENTUM@@
def make_optimizer(model):
    """@@OPTNAME@@ with L2 weight decay λ on DECAY only; its update rule is in the docstring at the top."""
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n in DECAY], "weight_decay": CONFIG["weight_decay"]},
              {"params": [p for n, p in named if n not in DECAY], "weight_decay": 0.0}]
    return @@OPTCALL@@


def steps_mask(x, lengths):
    """(B, T) bool of each sequence's valid steps from its length, or None for data without lengths."""
    return torch.arange(x.shape[1], device=x.device)[None, :] < lengths[0][:, None] if lengths else None


def run(net, x, y, lengths):
    """(output, targets) for the loss (logits where FUSED), with the mask where the model reads one. SEQ2SEQ:
    the decoder reads y shifted right by one step after <start> (teacher forcing); the result is the valid
    target steps only, (steps, V) and (steps,), so that the loss is the mean over them as in Layerboard."""
    mask = steps_mask(x, lengths)
    if not SEQ2SEQ:
        kw = {"mask": mask} if MASKED and mask is not None else {}
        return (net(x, return_logits=True, **kw) if FUSED else net(x, **kw)), y
    tgt = torch.cat([torch.full_like(y[:, :1], START), y[:, :-1]], 1).to(x.dtype)     # (B, T) teacher forcing
    valid = steps_mask(y, lengths[1:])                                                 # (B, T) <end> included
    args = (x, tgt) + ((mask, valid) if MASKED else ())
    out = net(*args, return_logits=True) if FUSED else net(*args)                     # (B, T, V)
    return out[valid], y[valid]


def scaled(model, y):
    """Targets in the units the model trains on: standardised with the training set's statistics (regression)."""
    return (y - model.y_mean) / model.y_std if REGRESS else y


def sums(model, out, y, loss, ref):
    """[loss·B, correct, B, Σr², Σ|r|, Σ(y − ȳ)², values] of a batch; r = prediction − target in the targets' units."""
    z = torch.zeros((), dtype=torch.float64, device=out.device)
    s = [loss.detach().double() * len(y), correct(out, y).double() if CLASSIFY else z,
         torch.tensor(float(len(y)), dtype=torch.float64, device=out.device)]
    if REGRESS:
        r = (model.original_units(out.detach().reshape(y.shape)) - y).double()
        c = y.double().reshape(len(y), -1) - ref
        s += [(r * r).sum(), r.abs().sum(), (c * c).sum(), torch.tensor(float(y.numel()), device=out.device).double()]
    else:
        s += [z, z, z, z]
    return torch.stack(s)


def metrics(prefix, t, world):
    """{prefix_loss, prefix_accuracy or prefix_rmse/_mae/_r2} from the summed batch values t over all processes."""
    if world > 1:
        dist.all_reduce(t)
    t = t.tolist()
    n, m = max(t[2], 1.0), max(t[6], 1.0)
    out = {f"{prefix}_loss": t[0] / n}
    if CLASSIFY:
        out[f"{prefix}_accuracy"] = t[1] / n
    if REGRESS:
        out.update({f"{prefix}_rmse": math.sqrt(t[3] / m), f"{prefix}_mae": t[4] / m,
                    f"{prefix}_r2": 1 - t[3] / t[5] if t[5] > 0 else None})
    return out


def target_mean(data, device):
    """The set's own mean target per component (the reference of R²)."""
    y = data.tensors[1]
    return y.double().reshape(len(y), -1).mean(0).to(device) if REGRESS and len(y) else None


def evaluate(model, data, prefix, rank, world, device, batch_size=512):
    """Metrics in evaluation mode over the whole set; each process takes every world-th sample."""
    model.eval()
    x, y, *lengths = (t[rank::world] for t in data.tensors)
    ref = target_mean(data, device)
    t = torch.zeros(7, dtype=torch.float64, device=device)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            out, yb = run(model, xb, yb, [v[i:i + batch_size].to(device) for v in lengths])
            t += sums(model, out, yb, loss_fn(out, scaled(model, yb)), ref)
    return metrics(prefix, t, world)


def save_checkpoint(model, path):
    """The module's state_dict (no DDP 'module.' prefix) as safetensors; a crash mid-write keeps the old file."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def finite(v):
    """JSON never holds NaN or infinity: null instead."""
    return v if v is None or math.isfinite(v) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--batch-size", type=int, default=CONFIG["batch_size"], help="global batch (all processes)")
    ap.add_argument("--weights", default=str(HERE / "weights.safetensors"), help="initial weights")
    ap.add_argument("--out", default=str(HERE / "checkpoint.safetensors"))
    a = ap.parse_args()
    if UNSUPPORTED:
        sys.exit("train.py cannot train this project as Layerboard does: " + UNSUPPORTED +
                 "; model.py and weights.safetensors are usable for inference and fine-tuning code of your own")

    distributed = "RANK" in os.environ                                          # set by torchrun
    cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local = 0, 1, 0
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(CONFIG["seed"] + rank)                                    # dropout differs per process
    gen = torch.Generator().manual_seed(CONFIG["seed"] + rank)                  # augmentation draws

    train, val = load_data()
    model = @@CLASS@@()
    model.load_state_dict(load_file(a.weights))
@@SYNCBN@@    model.to(device)
    net = DistributedDataParallel(model, device_ids=[local] if cuda else None) if distributed else model
    opt = make_optimizer(model)

    batch = len(train) if CONFIG["optimizer"] == "gd" else min(a.batch_size, len(train))
    if rank == 0 and batch % world:
        print(f"note: the batch of {batch} does not split evenly over {world} processes", file=sys.stderr)
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=CONFIG["seed"])
    loader = DataLoader(train, batch_size=max(1, batch // world), sampler=sampler)
    out_path = Path(a.out)

    best, best_state, waited = math.inf, None, 0
    status, message, step, epoch, t0 = "completed", "", 0, 0, time.perf_counter()
    ref = target_mean(train, device)
    for epoch in range(1, a.epochs + 1):
        sampler.set_epoch(epoch)
        net.train()
        t = torch.zeros(7, dtype=torch.float64, device=device)
        for xb, yb, *lengths in loader:
            if augment is not None:
                xb = augment(xb, gen)                                          # training batches only
            xb, yb = xb.to(device), yb.to(device)
            out, yb = run(net, xb, yb, [v.to(device) for v in lengths])
            loss = loss_fn(out, scaled(model, yb))
            opt.zero_grad()
            loss.backward()
            gn = sum((p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None),
                     torch.zeros((), dtype=torch.float64, device=device))
            ok = torch.isfinite(loss.detach()).double() * torch.isfinite(gn).double()
            if world > 1:
                dist.all_reduce(ok, op=dist.ReduceOp.MIN)                      # every process stops together
            if not ok.item():
                status = "diverged"
                message = (f"training diverged at epoch {epoch}, step {step + 1}: the loss or gradient became "
                           "NaN or infinite; the weights are those of the last good step. Try a smaller learning rate.")
                break
            if CLIP > 0 and gn.item() > CLIP * CLIP:
                for p in model.parameters():
                    p.grad.mul_(CLIP / gn.sqrt().item())
            opt.step()
            step += 1
            t += sums(model, out, yb, loss, ref)
        if status == "diverged":
            break
        tm = metrics("train", t, world)
        vm = evaluate(model, val, "val", rank, world, device) if len(val) else {}
        line = {"epoch": epoch}
        for k in ("loss", "accuracy", "rmse", "mae", "r2"):                   # the order of `layerboard train --json`
            line.update({f"{s}_{k}": m[f"{s}_{k}"] for s, m in (("train", tm), ("val", vm)) if f"{s}_{k}" in m})
        line["elapsed"] = time.perf_counter() - t0
        if rank == 0:
            print(json.dumps({k: finite(v) for k, v in line.items()}), flush=True)
            save_checkpoint(model, out_path)
        if CONFIG["patience"]:                                                  # early stopping, as Layerboard
            score = line.get("val_loss", line["train_loss"])
            if score < best:
                best, waited = score, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= CONFIG["patience"]:
                    status = "early_stopped"
                    message = (f"early stopping at epoch {epoch}: no improvement for {waited} epochs; "
                               f"restored the best weights (loss {best:.4g})")
                    break
    if best_state is not None and status != "diverged":
        model.load_state_dict(best_state)
    summary = {"status": status, "message": message, "epochs": epoch, "steps": step,
               "seconds": time.perf_counter() - t0}
    summary.update(evaluate(model, train, "train", rank, world, device))
    if len(val):
        summary.update(evaluate(model, val, "val", rank, world, device))
    if rank == 0:
        save_checkpoint(model, out_path)
        print(json.dumps({k: finite(v) if isinstance(v, float) else v for k, v in summary.items()}), flush=True)
    print(f"rank {rank} of {world}: finished ({status})", file=sys.stderr, flush=True)
    if distributed:
        dist.destroy_process_group()
    return 1 if status == "diverged" else 0


if __name__ == "__main__":
    sys.exit(main())
'''

SYNCBN = '''    if distributed and cuda:                                                    # batch statistics over all GPUs
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
'''


def train_source(project, model, class_name, decay, fused, unsupported="", masked=False):
    """train.py for the project: its loss, optimizer, hyperparameters and early stopping."""
    t = project.training
    loss, opt = t["loss"], t["optimizer"]
    config = {k: t[k] for k in ("loss", "optimizer") + OPT_KEYS[opt] +
              ("weight_decay", "batch_size", "epochs", "patience", "seed")}
    cfg = "{\n" + "".join(f"    {json.dumps(k)}: {json.dumps(v) if isinstance(v, str) else repr(v)},\n"
                           for k, v in config.items()) + "}"
    dec = "(\n" + "".join(f"    {json.dumps(d)},\n" for d in decay) + ")" if decay else "()"
    fused = fused and loss != "mse"
    lossdoc = LOSS_SRC[(loss, fused)].split('"""')[1].rstrip(".")
    formula, call = OPTIMIZER_SRC[opt]
    has_bn = any(model.layers[n].type == "BatchNorm" for n in model.order)
    classify = loss in ("cce", "bce")
    regress = "y_mean" in model.data
    rep = {"@@NAME@@": project.name or class_name, "@@CLASS@@": class_name, "@@CONFIG@@": cfg, "@@DECAY@@": dec,
           "@@FUSED@@": repr(fused), "@@CLASSIFY@@": repr(classify), "@@REGRESS@@": repr(regress), "@@MASKED@@": repr(masked), "@@LOSS@@": LOSS_SRC[(loss, fused)],
           "@@CORRECT@@": CORRECT.get((loss, fused), "torch.zeros(())"), "@@LOSSDOC@@": lossdoc,
           "@@MOMENTUM@@": ("\n" + MOMENTUM_SRC + "\n") if opt == "momentum" else "",
           "@@DOCS@@": "\n".join(textwrap.fill(t, 110, subsequent_indent="    ")
                                  for t in (f"Loss: {lossdoc}.", f"Optimizer ({opt}): {formula}.")),
           "@@OPTNAME@@": opt, "@@OPTDOC@@": formula, "@@OPTCALL@@": call, "@@SYNCBN@@": SYNCBN if has_bn else "",
           "@@CLIP@@": repr(float(t.get("clip_norm", 0.0))), "@@UNSUPPORTED@@": repr(unsupported),
           "@@SEQ2SEQ@@": repr(target_input(model) is not None), "@@START@@": str(START)}
    s = TRAIN
    for k, v in rep.items():
        s = s.replace(k, v)
    return s
