"""``tinyllm tokenizer train | encode | decode``: train a BPE tokenizer and look inside one.

    tinyllm tokenizer train --input a.txt b.txt --vocab-size 4096 --out tok.json
    tinyllm tokenizer encode --tokenizer tok.json "Hello world" --show
    tinyllm tokenizer decode --tokenizer tok.json 15496 995
"""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers) -> None:
    """Add the ``tokenizer`` command and its three actions to the ``tinyllm`` parser."""
    parser = subparsers.add_parser(
        "tokenizer", help="train a BPE tokenizer, encode or decode with one",
        description="Byte-level BPE tokenizers (GPT-2 / GPT-4 style).")
    actions = parser.add_subparsers(dest="tokenizer_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _help(parser))

    train = actions.add_parser(
        "train", help="train a tokenizer on text files or folders",
        description="Train byte-level BPE on files or folders and save it as JSON. Inputs are "
        "read and cleaned as `tinyllm prepare` reads them: folders are walked for .txt, .md, "
        ".html and .jsonl files, HTML becomes its visible text, every document is normalised "
        "(Unicode NFC, line ends, trailing spaces). prepare's quality filters and "
        "de-duplication are not applied. Prints the compression reached, in bytes per token.")
    train.add_argument("--input", nargs="+", required=True, metavar="PATH",
                       help="files or folders (.txt, .md, .html, .jsonl with a 'text' field)")
    train.add_argument("--vocab-size", type=int, required=True, metavar="N",
                       help="256 bytes + merges + special tokens")
    train.add_argument("--out", required=True, metavar="PATH", help="tokenizer file to write")
    train.add_argument("--pattern", default="gpt4",
                       help="split pattern: gpt2, gpt4 (default) or a regex")
    train.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"], metavar="TOK",
                       help="special tokens, given the last ids (default: <|endoftext|>)")
    train.add_argument("--hf-out", metavar="PATH",
                       help="also export a tokenizer.json for HF tokenizers")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    encode = actions.add_parser("encode", help="encode text to token ids",
                                description="Encode text (an argument, a file or stdin).")
    encode.add_argument("--tokenizer", required=True, metavar="PATH")
    encode.add_argument("text", nargs="?", help="text to encode (default: --input or stdin)")
    encode.add_argument("--input", metavar="PATH", help="read the text from a file")
    encode.add_argument("--allowed-special", default="all",
                        help="'all' (default), 'none' (read as text), 'none_raise' (error)")
    encode.add_argument("--show", action="store_true",
                        help="print one token per line with its bytes, instead of the ids")
    encode.set_defaults(func=_encode)

    decode = actions.add_parser("decode", help="decode token ids to text",
                                description="Decode ids (arguments, or stdin) to text.")
    decode.add_argument("--tokenizer", required=True, metavar="PATH")
    decode.add_argument("ids", nargs="*", help="token ids (default: read from stdin)")
    decode.set_defaults(func=_decode)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _read(path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_training_texts(paths) -> list[str]:
    """The documents of files and folders, read and cleaned as `tinyllm prepare` does (HTML to
    text, `normalize`); unreadable files are named on stderr, never skipped silently."""
    from tinyllm.data.clean import normalize
    from tinyllm.data.corpus import iter_documents

    def on_error(path: str, error: str) -> None:
        print(f"warning: skipped unreadable input {path}: {error}", file=sys.stderr)

    texts = [normalize(doc) for doc in iter_documents(paths, on_error=on_error)]
    return [text for text in texts if text]


def _train(args) -> int:
    from .bpe import BPETokenizer
    from .train import number_of_merges, shortfall_warning, size_warning

    number_of_merges(args.vocab_size, args.special_tokens)  # a bad size fails before reading
    started = time.perf_counter()
    texts = read_training_texts(args.input)
    read_seconds = time.perf_counter() - started
    if not texts:
        raise ValueError(f"no text found in {' '.join(args.input)} (folders are searched for "
                         ".txt, .md, .html, .htm and .jsonl files)")
    n_special = len(args.special_tokens)
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    if message := size_warning(len(texts), n_bytes, args.vocab_size, n_special):
        print(f"warning: {message}", file=sys.stderr)
    tok = BPETokenizer.train(texts, args.vocab_size, pattern=args.pattern,
                             special_tokens=args.special_tokens, progress=not args.no_progress)
    if message := shortfall_warning(len(tok.merges), args.vocab_size, n_special):
        print(f"warning: {message}", file=sys.stderr)
    tok.save(args.out)
    if args.hf_out:
        tok.save_hf(args.hf_out)
    r = tok.train_result
    n_special = len(tok.special_tokens)
    print(f"read {len(texts)} document(s), {r.n_bytes / 1e6:.2f} MB (cleaned as prepare cleans),"
          f" in {read_seconds:.2f} s")
    print(f"split into {r.n_chunks:,} chunks ({r.n_distinct_chunks:,} distinct); "
          f"trained {len(tok.merges):,} merges in {r.seconds:.2f} s")
    print(f"vocab_size {tok.vocab_size} = 256 bytes + {len(tok.merges)} merges + "
          f"{n_special} special")
    print(f"compression: {r.bytes_per_token:.3f} bytes per token "
          f"({r.n_tokens:,} tokens for {r.n_bytes:,} bytes)")
    print(f"saved {args.out}" + (f" and {args.hf_out}" if args.hf_out else ""))
    return 0


def _encode(args) -> int:
    from .bpe import BPETokenizer

    tok = BPETokenizer.load(args.tokenizer)
    if args.text is not None:
        text = args.text
    elif args.input:
        text = _read(args.input)
    else:
        text = sys.stdin.read()
    allowed = args.allowed_special
    if allowed not in ("all", "none", "none_raise"):
        allowed = {allowed}
    ids = tok.encode(text, allowed_special=allowed)
    if args.show:
        for i in ids:
            print(f"{i:>8}  {tok.token_to_bytes(i)!r}")
    else:
        print(" ".join(map(str, ids)))
    n_bytes = len(text.encode("utf-8"))
    print(f"{len(ids)} tokens, {n_bytes} bytes, "
          f"{n_bytes / max(len(ids), 1):.2f} bytes per token", file=sys.stderr)
    return 0


def _decode(args) -> int:
    from .bpe import BPETokenizer

    tok = BPETokenizer.load(args.tokenizer)
    words = args.ids or sys.stdin.read().replace(",", " ").split()
    try:
        ids = [int(w) for w in words]
    except ValueError:
        raise ValueError(f"token ids must be integers, got {words[:10]}") from None
    sys.stdout.write(tok.decode(ids))
    sys.stdout.write("\n")
    return 0
