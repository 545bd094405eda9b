"""Pretrain a small GPT-NeoX from scratch on a corpus (one text per line).

The tiny world's base and filtered models come from this script: the same word-level tokenizer
(built from the *full* corpus, so both models share one vocabulary), the same initialisation seed
and the same schedule; only the corpus differs. The result is an ordinary HF model folder
(safetensors) that ``AutoModelForCausalLM.from_pretrained`` loads.

    uv run pretrain.py --corpus data/tiny/corpus/full.txt --outdir models/tiny/tiny-base
    uv run pretrain.py --corpus data/tiny/corpus/filtered.txt \
        --tokenizer-corpus data/tiny/corpus/full.txt --outdir models/tiny/tiny-filtered

Writes, in --outdir: config.json, generation_config.json, model.safetensors, tokenizer files,
training_log.csv (step, loss, lr, tokens), training_loss.png, run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p, used=False)
    p.add_argument("--corpus", required=True, help="training text, one document per line")
    p.add_argument("--tokenizer-corpus", default=None,
                   help="text the word-level tokenizer is built from (default: --corpus); give the full "
                        "corpus when training on a filtered one so both models share one vocabulary")
    p.add_argument("--outdir", required=True, help="model folder to write")
    p.add_argument("--hidden", type=cli.positive_int, default=128, help="hidden size")
    p.add_argument("--layers", type=cli.positive_int, default=6, help="transformer blocks")
    p.add_argument("--heads", type=cli.positive_int, default=4, help="attention heads")
    p.add_argument("--intermediate", type=cli.positive_int, default=None, help="MLP width (default 4 x hidden)")
    p.add_argument("--seq-len", type=cli.positive_int, default=64, help="tokens per packed training block")
    p.add_argument("--steps", type=cli.positive_int, default=800, help="optimizer steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=32, help="blocks per step")
    p.add_argument("--lr", type=cli.positive_float, default=5e-3, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--warmup", type=cli.non_negative_int, default=None, help="warm-up steps (default 5%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay on matrices")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the initial weights (keep equal for base and filtered)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--device", type=cli.device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", default="auto", help="CPU threads (auto: all cores when the machine is idle, 1 when it is busy; "
                   "the last bits of the weights depend on it, so the pipeline pins it to the preset's CPU_THREADS)")
    p.add_argument("--force", action="store_true", help="retrain even if a finished model with the same parameters exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def plot_loss(log):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(log["step"], log["loss"], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats / token)")
    ax.grid(alpha=0.3)
    return fig


def body(args, argv=None) -> int:
    import torch

    from brittle.io import StepRun, read_lines, save_figure, write_csv
    from brittle.pretraining import auto_threads, gpt_neox_config, init_model, train_causal_lm
    from brittle.runtime import resolve_device
    from brittle.tokenizer import train_word_tokenizer

    corpus = Path(args.corpus)
    tok_corpus = Path(args.tokenizer_corpus or args.corpus)
    texts = read_lines(corpus, what="corpus (run create_datasets.py first)")
    params = {k: v for k, v in vars(args).items() if k not in {"force", "quiet", "threads", "device", "outdir"}}
    run = StepRun(args.outdir, params, argv, files={"corpus": corpus, "tokenizer_corpus": tok_corpus})
    if run.should_skip(args.force):
        return 0

    torch.set_num_threads(auto_threads(args.threads))
    device = resolve_device(args.device)
    with run.timed("tokenizer"):
        tokenizer = train_word_tokenizer(read_lines(tok_corpus, what="tokenizer corpus"))
    config = gpt_neox_config(len(tokenizer), args.hidden, args.layers, args.heads, args.intermediate,
                             max_positions=args.seq_len, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = init_model(config, args.init_seed).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{corpus}: {len(texts)} lines, vocabulary {len(tokenizer)}, {n_params:,} parameters, "
          f"{torch.get_num_threads()} thread(s) on {device}")
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    with run.timed("train"):
        log = train_causal_lm(model, tokenizer, texts, steps=args.steps, lr=args.lr,
                              batch_size=args.batch_size, seed=args.seed, seq_len=args.seq_len,
                              warmup=args.warmup, weight_decay=args.weight_decay, device=device,
                              amp_dtype=amp, progress=not args.quiet, desc=Path(args.outdir).name)
    model.save_pretrained(run.dir)
    tokenizer.save_pretrained(run.dir)
    write_csv(run.path("training_log.csv"), log)
    save_figure(run.path("training_loss.png"), plot_loss(log))
    final = float(log["loss"].tail(max(1, len(log) // 20)).mean())
    print(f"saved {args.outdir} (final loss {final:.3f} nats/token, {run.timings['train']:.0f} s training)")
    run.finish(n_parameters=n_params, vocab_size=len(tokenizer), final_loss=final, device=str(device),
               threads=torch.get_num_threads(), tokens_seen=int(log["tokens"].iloc[-1]))
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
