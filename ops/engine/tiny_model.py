"""Build a tiny Qwen3 checkpoint that follows a script, for tests and the CPU quick start. No downloads.

The model is a Markov chain written into real Qwen3 weights: `o_proj` and `down_proj` are zero, so the
residual stream at each position is just the token embedding; script tokens get orthonormal embeddings,
and `lm_head` maps each to its successor with a large logit. A served trajectory therefore reads

    <think>\\n Okay, let me work through this carefully hmm hmm ... </think> The answer is \\boxed{X}.

with a geometric number of " hmm" (each repeats with probability --repeat-p, mean 1/(1-p)) and X drawn
from --answers. With --conclusion-repeat-p q > 0 the conclusion itself is long: `</think>` is followed
by a geometric number (mean 1/(1-q)) of filler words, each drawn from eight, before " The answer is",
so that the references a synthesis prompt gathers outweigh the problem, as at the paper's scale, and
two conclusions differ from their first words on (no prompt shares a long prefix with another by
chance). Real `</think>` compaction,
real `\\boxed{}` answers and real token counts, from a real engine. Runs in the engine venv (needs
torch, transformers, tokenizers).

    python ops/engine/tiny_model.py OUT_DIR [--repeat-p 0.9] [--conclusion-repeat-p 0]
        [--answers 204:0.5,25:0.3,809:0.2]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = "\n"  # the generation prompt ends in "<think>\n": the chain starts from that newline
PREAMBLE = ["Okay", ",", " let", " me", " work", " through", " this", " carefully"]
REPEAT = " hmm"
CONCLUSION = ["</think>", " The", " answer", " is", " \\boxed{"]
FILLERS = [" so", " then", " thus", " hence", " now", " well", " yes", " right"]  # --conclusion-repeat-p
CLOSE = ["}", "."]
EOS = "<|im_end|>"
SPECIAL = ["<|endoftext|>", "<|im_start|>", EOS]
BIG = 40.0  # successor logit: every other token gets about e^-40 of the mass

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def parse_answers(text: str) -> dict[str, float]:
    pairs = [item.split(":") for item in text.split(",")]
    weights = {answer: float(weight) for answer, weight in pairs}
    total = sum(weights.values())
    return {answer: w / total for answer, w in weights.items()}


def corpus() -> list[str]:
    """Local text to train the BPE merges on: the example problems and the synthesis prompt."""
    texts = []
    for path in sorted((HERE.parent / "examples").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.extend(m["content"] for m in json.loads(line).get("messages", []))
    texts.append((HERE.parent.parent / "pacore" / "core" / "prompts.py").read_text(encoding="utf-8"))
    return texts


def build_tokenizer(out: Path, script: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    added = ["<think>", *(t for t in script if t != START)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return tokenizer


def transitions(
    repeat_p: float, answers: dict[str, float], conclusion_p: float = 0.0
) -> dict[str, dict[str, float]]:
    chain = [START, *PREAMBLE, REPEAT]
    table = {a: {b: 1.0} for a, b in zip(chain, chain[1:], strict=False)}
    table[REPEAT] = (
        {REPEAT: repeat_p, CONCLUSION[0]: 1.0 - repeat_p} if repeat_p > 0 else {CONCLUSION[0]: 1.0}
    )
    table.update({a: {b: 1.0} for a, b in zip(CONCLUSION, CONCLUSION[1:], strict=False)})
    if conclusion_p > 0:  # </think> then so yes ... well The answer is
        share = 1.0 / len(FILLERS)
        table[CONCLUSION[0]] = dict.fromkeys(FILLERS, share)
        for filler in FILLERS:
            table[filler] = {
                **dict.fromkeys(FILLERS, conclusion_p * share),
                CONCLUSION[1]: 1.0 - conclusion_p,
            }
    table[CONCLUSION[-1]] = dict(answers)
    table.update({answer: {CLOSE[0]: 1.0} for answer in answers})
    table[CLOSE[0]] = {CLOSE[1]: 1.0}
    table[CLOSE[1]] = {EOS: 1.0}
    return table


def build(out: Path, repeat_p: float, answers: dict[str, float], conclusion_p: float = 0.0) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    extra = FILLERS if conclusion_p > 0 else []  # the default model's vocabulary is unchanged
    script = [START, *PREAMBLE, REPEAT, *CONCLUSION, *answers, *CLOSE, *extra]
    tokenizer = build_tokenizer(out, script)
    ids = {t: _single_id(tokenizer, t) for t in [*script, EOS]}
    table = transitions(repeat_p, answers, conclusion_p)
    hidden = 64
    assert len(table) <= hidden, "every state token needs its own orthonormal embedding"
    config = Qwen3Config(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        eos_token_id=ids[EOS],
        bos_token_id=None,
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        basis = torch.linalg.qr(torch.randn(hidden, hidden))[0]  # orthonormal columns
        embed = model.model.embed_tokens.weight
        embed.mul_(0.01)  # non-script tokens: small and never the last token of a prompt
        head = model.lm_head.weight
        head.zero_()
        scale = math.sqrt(hidden)  # RMSNorm turns a unit vector e into sqrt(hidden) * e
        for state, (token, successors) in enumerate(table.items()):
            e = basis[:, state]
            embed[ids[token]] = e
            for successor, p in successors.items():
                head[ids[successor]] += (BIG + math.log(p)) / scale * e
    model.save_pretrained(out, safe_serialization=True)
    generation = {"eos_token_id": ids[EOS], "temperature": 1.0, "top_p": 1.0}
    (out / "generation_config.json").write_text(json.dumps(generation))


def _single_id(tokenizer, token: str) -> int:  # type: ignore[no-untyped-def]
    encoded = tokenizer.encode(token).ids
    assert len(encoded) == 1, f"script token {token!r} must be one token, got {encoded}"
    return int(encoded[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeat-p", type=float, default=0.9, help="probability that ' hmm' repeats")
    parser.add_argument(
        "--conclusion-repeat-p",
        type=float,
        default=0.0,
        help="probability that another filler word follows </think> (0: the conclusion is ' The answer is ...')",
    )
    parser.add_argument("--answers", default="204:0.5,25:0.3,809:0.2", help="answer:weight,...")
    args = parser.parse_args()
    if not 0 <= args.conclusion_repeat_p < 1:
        parser.error(f"--conclusion-repeat-p must be at least 0 and below 1, not {args.conclusion_repeat_p}")
    build(args.out, args.repeat_p, parse_answers(args.answers), args.conclusion_repeat_p)
    print(args.out)


if __name__ == "__main__":
    main()
