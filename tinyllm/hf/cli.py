"""`tinyllm import DIR --out RUN` and `tinyllm export RUN --format hf --out DIR`."""

from __future__ import annotations


def register(subparsers):
    p = subparsers.add_parser(
        "import", help="make a run folder from a Hugging Face model folder (GPT-2, Llama-style)",
        description="Read a local Hugging Face model folder (config.json, model.safetensors or "
                    "its shards, tokenizer.json or vocab.json + merges.txt) and write a run "
                    "folder that sample, eval, chat, finetune and train --init-from use. "
                    "Pickled weights (pytorch_model.bin) are refused, never loaded.")
    p.add_argument("folder", metavar="DIR", help="the Hugging Face model folder")
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder to write (new)")
    p.set_defaults(func=_import)

    e = subparsers.add_parser(
        "export", help="write a run as a Hugging Face model folder",
        description="Write RUN's weights, config and tokenizer so that transformers' "
                    "AutoModelForCausalLM and AutoTokenizer load them (GPT2LMHeadModel, or "
                    "LlamaForCausalLM for RoPE/SwiGLU/RMSNorm runs). LoRA runs hold merged "
                    "weights already.")
    e.add_argument("run", metavar="RUN", help="a run folder")
    e.add_argument("--format", choices=("hf",), default="hf", help="output format (hf)")
    e.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new)")
    e.set_defaults(func=_export)


def _import(args):
    from tinyllm.hf import import_hf

    out = import_hf(args.folder, args.out)
    print(f"imported {args.folder} -> {out} (try: tinyllm sample {out})")
    return 0


def _export(args):
    from tinyllm.hf import export_hf

    out = export_hf(args.run, args.out)
    print(f"exported {args.run} -> {out} (AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0
