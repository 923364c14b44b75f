#!/usr/bin/env python3
"""Converts the released LongMem checkpoints (fairseq) to this project's safetensors.

    python3 scripts/convert_fairseq.py \\
        --backbone downloads/gpt2_medium/checkpoint_last.pt \\
        --sidenet downloads/longmem_gpt2_medium/checkpoint_last.pt \\
        --dict downloads/gpt2_bpe/dict.txt \\
        --out weights/longmem-558m

writes into --out:
- backbone.safetensors: the frozen `newgpt` backbone under this project's names (`wte`,
  `h.{i}.ln`, `h.{i}.attn.{q,k,v,out}_proj`, `h.{i}.mlp.fc_in/fc_out`, `ln_f`, `lm_head`);
- sidenet.safetensors: the SideNet (`h.{i}.*` as above, `ln_f` from `decoder.layer_norm`,
  `mem_gate` from the memory layer's `memory_bias`: σ of it weights memory against local
  attention, as ours does);
- dict.txt: the fairseq dictionary, copied (`data.tokenizer` points at it);
- longmem.toml: the [backbone] and [sidenet] settings the weights need.

Every tensor is written as float32. The backbone copy inside the SideNet checkpoint is
compared with the backbone checkpoint (the largest difference is printed); with no
--backbone, it is the one converted. Reading a fairseq checkpoint needs PyTorch's unpickler
(`pip install torch safetensors`), not fairseq: classes of modules that are not installed
(fairseq's, omegaconf's) are read as empty stand-ins, since only the tensors are used.
"""
import argparse
import pathlib
import pickle
import re
import shutil
import sys

import torch
from safetensors.torch import save_file


class _Absent:
    """Stands in for an instance of a class whose module is not installed."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["state"] = state

    def __call__(self, *args, **kwargs):
        return _Absent()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Absent,), {"__module__": module})


class _PickleModule:
    """What `torch.load(pickle_module=...)` asks of a pickle module."""

    Unpickler = _Unpickler
    __name__ = "longmem_bench_pickle"

    @staticmethod
    def load(file, **kwargs):
        return _Unpickler(file, **kwargs).load()


def load_state(path):
    """The `model` state dict of a fairseq checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", pickle_module=_PickleModule, weights_only=False)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        sys.exit(f"{path}: not a fairseq checkpoint (no `model` state dict)")
    return checkpoint["model"]


def prefix_of(state, suffix, path):
    """The key prefix under which `suffix` (e.g. transformer.wte.weight) sits."""
    found = sorted(k[: -len(suffix)] for k in state if k.endswith(suffix))
    if len(found) != 1:
        sys.exit(f"{path}: expected one key ending in `{suffix}`, found {found or 'none'}")
    return found[0]


BACKBONE_RULES = [
    (r"transformer\.wte\.weight", "wte.weight"),
    (r"transformer\.h\.(\d+)\.ln_1\.(weight|bias)", r"h.\1.ln.\2"),
    (r"transformer\.h\.(\d+)\.attn\.(q|k|v|out)_proj\.weight", r"h.\1.attn.\2_proj.weight"),
    (r"transformer\.h\.(\d+)\.mlp\.(fc_in|fc_out)\.(weight|bias)", r"h.\1.mlp.\2.\3"),
    (r"transformer\.ln_f\.(weight|bias)", r"ln_f.\1"),
    (r"lm_head\.(weight|bias)", r"lm_head.\1"),
]

SIDENET_RULES = [
    (r"decoder\.layers\.(\d+)\.ln_1\.(weight|bias)", r"h.\1.ln.\2"),
    (r"decoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.weight", r"h.\1.attn.\2_proj.weight"),
    (r"decoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"h.\1.mlp.fc_in.\2"),
    (r"decoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"h.\1.mlp.fc_out.\2"),
    (r"decoder\.layer_norm\.(weight|bias)", r"ln_f.\1"),
    (r"decoder\.layers\.\d+\.self_attn\.memory_bias", "mem_gate"),
]

# Keys of the SideNet checkpoint that are not SideNet weights: fairseq's version counter,
# and the embedding and output projection it shares with the backbone (checked below).
SHARED = {"decoder.version", "decoder.embed_tokens.weight", "decoder.output_projection.weight"}


def rename(key, rules):
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def convert(state, rules, keys, path):
    out, unknown = {}, []
    for key in keys:
        name = rename(key, rules)
        if name is None:
            unknown.append(key)
        elif name in out:
            sys.exit(f"{path}: two keys map to {name} (a second memory_bias?)")
        else:
            out[name] = state[key].float().contiguous()
    if unknown:
        sys.exit(f"{path}: keys of no known LongMem layout: {unknown[:5]} ({len(unknown)} in all)")
    return out


def backbone_of(state, path):
    prefix = prefix_of(state, "transformer.wte.weight", path)
    local = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return prefix, convert(local, BACKBONE_RULES, list(local), path)


def max_diff(a, b):
    if set(a) != set(b):
        sys.exit(f"the two backbones differ in tensors: {sorted(set(a) ^ set(b))[:5]}")
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", type=pathlib.Path, help="gpt2_medium/checkpoint_last.pt")
    parser.add_argument("--sidenet", type=pathlib.Path, required=True, help="longmem_gpt2_medium/checkpoint_last.pt")
    parser.add_argument("--dict", type=pathlib.Path, help="gpt2_bpe/dict.txt")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    side_state = load_state(args.sidenet)
    inner_prefix, inner = backbone_of(side_state, args.sidenet)
    print(f"{args.sidenet}: backbone copy under `{inner_prefix}`")
    backbone = inner
    if args.backbone:
        _, backbone = backbone_of(load_state(args.backbone), args.backbone)
        print(f"max |backbone checkpoint - SideNet checkpoint's copy| = {max_diff(backbone, inner):.3g}")
    side_keys = [k for k in side_state if not k.startswith(inner_prefix) and k not in SHARED]
    sidenet = convert(side_state, SIDENET_RULES, side_keys, args.sidenet)
    for key, ours in [("decoder.embed_tokens.weight", "wte.weight"), ("decoder.output_projection.weight", "lm_head.weight")]:
        if key in side_state and not torch.equal(side_state[key].float(), backbone[ours]):
            print(f"note: {key} differs from the backbone's {ours}; the backbone's is used, as LongMem's forward does")

    n_layer = 1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("h."))
    layers = 1 + max(int(k.split(".")[1]) for k in sidenet if k.startswith("h."))
    memory_layer = next(
        int(m.group(1)) for k in side_keys if (m := re.fullmatch(r"decoder\.layers\.(\d+)\.self_attn\.memory_bias", k))
    )
    vocab, n_embd = backbone["wte.weight"].shape
    n_inner = backbone["h.0.mlp.fc_in.weight"].shape[0]
    n_head = sidenet["mem_gate"].shape[0]
    # LongMem's SideNet layer i reads backbone layer 2i+1's stream, so its memory layer m
    # corresponds to backbone layer 2m+1 (17 for the released model's layer 8).
    backbone_memory_layer = (memory_layer + 1) * n_layer // layers - 1

    args.out.mkdir(parents=True, exist_ok=True)
    save_file(backbone, str(args.out / "backbone.safetensors"))
    save_file(sidenet, str(args.out / "sidenet.safetensors"))
    if args.dict:
        shutil.copyfile(args.dict, args.out / "dict.txt")
    settings = f"""# The released LongMem model's shape, for a spec's [backbone] and [sidenet] sections.
[backbone]
style = "newgpt"
vocab_size = {vocab}
n_layer = {n_layer}
n_head = {n_head}
n_embd = {n_embd}
n_inner = {n_inner}
layer_norm_eps = 1e-6
gelu = "tanh"
memory_layer = {backbone_memory_layer}

[sidenet]
layers = {layers}
memory_layer = {memory_layer}
gelu = "erf"
layer_norm_eps = 1e-5
"""
    (args.out / "longmem.toml").write_text(settings)
    print(f"wrote {args.out}/backbone.safetensors ({len(backbone)} tensors), sidenet.safetensors ({len(sidenet)}), longmem.toml")
    print(settings)


if __name__ == "__main__":
    main()
