"""Interoperability with Hugging Face `transformers` folders (config.json, model.safetensors,
tokenizer files), in both directions, with NumPy alone: transformers is never imported here.

    from tinyllm.hf import import_hf, export_hf
    import_hf("gpt2-folder/", "runs/gpt2")          # then tinyllm.load("runs/gpt2")
    export_hf("runs/tinyllm", "hf-out/")             # AutoModelForCausalLM.from_pretrained("hf-out/")

files.py reads safetensors memory-mapped and writes tensor by tensor; convert.py maps configs and
tensor names; tokenizer.py reads and writes the tokenizer files; transfer.py puts them together.
"""

from tinyllm.hf.transfer import export_hf, import_hf

__all__ = ["import_hf", "export_hf"]
