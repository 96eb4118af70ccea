"""Learning signals of the toy model, per checkpoint.

* **Translation**: next-token accuracy on a concept's translation inside a parallel pair
  (``猫の色は黒です。 The colour of the`` → ``▁cat``), both directions, against the same prompt
  whose source sentence names a different concept (the model's accuracy without the
  translation cue) and against chance (one over the category's size).
* **Gloss**: accuracy of the bracketed translation (``猫 (`` → ``cat``).
* **Residual geometry** at the chosen layer: each (concept, form) is the mean residual at the
  form's last token over several monolingual sentences; vectors are centred on their mean.
  ``cross_gap`` = cos(ja, en of one concept) − cos(ja, en of different concepts);
  ``variant_gap`` the same for a Japanese form and its orthographic variant (猫 / ネコ);
  ``lang_gap`` = cos(same language, different concepts) − cos(different languages, different
  concepts): how much the space is organised by language rather than meaning.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llmjp_ckpt.toy.corpus import FRAMES, Frame, Generator, Segment
from llmjp_ckpt.toy.lexicon import BY_ID, CONCEPTS, Concept, in_category
from llmjp_ckpt.toy.train import deterministic


@dataclass
class Probe:
    """A prompt and the token it should be followed by (or the position to read)."""

    ids: list[int]
    target: int
    kind: str
    chance: float = 0.0
    concept: str | None = None  # the target's planted concept (per-concept scores in toy/timeline.py)


def _text(segs: list[Segment]) -> str:
    return "".join(s[0] for s in segs)


def _target_probe(sp, prefix: str, target: str, kind: str, chance: float) -> Probe | None:
    """The first token of ``target`` after ``prefix`` (``None`` if the tokenisations disagree)."""
    if prefix.endswith(" "):
        prefix, target = prefix[:-1], " " + target
    p, full = sp.encode(prefix), sp.encode(prefix + target)
    if full[: len(p)] != p or len(full) == len(p):
        return None
    return Probe([1] + p, full[len(p)], kind, chance)


def _frames_with(c: Concept) -> list[tuple[Frame, str]]:
    """Frames (and the slot) in which ``c`` can appear; a fact's object needs a subject."""
    return [(f, slot) for f in FRAMES for slot in ("a", "b")
            if c.category in (f.a if slot == "a" else f.b)
            and not (slot == "b" and f.fact and c.id not in f.fact.values())]


def translation_probes(sp, seed: int, n: int) -> list[Probe]:
    """Parallel-pair prompts (``parallel`` and the ``mismatched`` control) and gloss prompts."""
    g = Generator(seed)
    probes: list[Probe] = []
    for i in range(n):
        src, tgt = ("ja", "en") if i % 2 == 0 else ("en", "ja")
        frame = g.frame()
        a, b = g.fill(frame)
        forms = {c.id: g.ja_form(c) for c in (a, b)}
        target_segs = g.sentence(frame, a, b, tgt, forms=forms)
        k = next(j for j, s in enumerate(target_segs) if s[1])
        concept = BY_ID[target_segs[k][1]]
        chance = 1.0 / len(in_category(concept.category))
        prefix, target = _text(target_segs[:k]), target_segs[k][0]
        # One whole pair first, so the prompt is recognisably inside a parallel document.
        f0 = g.frame()
        a0, b0 = g.fill(f0)
        forms0 = {c.id: g.ja_form(c) for c in (a0, b0)}
        lead = _text(g.sentence(f0, a0, b0, src, forms=forms0)) + " "
        lead += _text(g.sentence(f0, a0, b0, tgt, forms=forms0)) + " "
        other = g.rng.choice([c for c in in_category(*frame.a) if c.id != a.id])
        a2, b2 = g.fill(frame, other)
        for kind, (x, y) in (("parallel", (a, b)), ("mismatched", (a2, b2))):
            source = _text(g.sentence(frame, x, y, src, forms=forms))
            if kind == "mismatched" and concept.id in (x.id, y.id):
                continue
            probe = _target_probe(sp, lead + source + " " + prefix, target, kind, chance)
            if probe:
                probe.concept = concept.id
                probes.append(probe)
        gloss = g.sentence(frame, a, b, "ja", style="gloss", forms=forms)
        k = next(j for j, s in enumerate(gloss) if s[2] == "en")
        chance = 1.0 / len(in_category(BY_ID[gloss[k][1]].category))
        probe = _target_probe(sp, _text(gloss[:k]), gloss[k][0], "gloss", chance)
        if probe:
            probes.append(probe)
    return probes


def form_probes(sp, seed: int, per_form: int) -> list[tuple[str, str, str, list[int]]]:
    """``(concept, language, form, ids)``: monolingual prompts ending with the form."""
    g = Generator(seed)
    out = []
    for c in CONCEPTS:
        frames = _frames_with(c)
        for lang, form in c.forms:
            for _ in range(per_form):
                frame, slot = g.rng.choice(frames)
                if slot == "b" and frame.fact:
                    others = [BY_ID[x] for x, y in frame.fact.items() if y == c.id]
                else:
                    others = in_category(*(frame.b if slot == "a" else frame.a))
                other = g.rng.choice(others)
                a, b = (c, other) if slot == "a" else (other, c)
                if slot == "a" and frame.fact:
                    b = BY_ID[frame.fact[c.id]]
                segs = g.sentence(frame, a, b, lang, forms={c.id: form} if lang == "ja" else None)
                k = next(j for j, s in enumerate(segs) if s[1] == c.id)
                out.append((c.id, lang, form, [1] + sp.encode(_text(segs[: k + 1]))))
    return out


def _run(model, seqs: list[list[int]], layer: int, batch: int = 64):
    """Last-position logits' argmax and layer residuals for each sequence (right-padded)."""
    preds, resid = [], []
    for i in range(0, len(seqs), batch):
        chunk = seqs[i: i + batch]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), 3, dtype=torch.long)
        for r, s in enumerate(chunk):
            ids[r, : len(s)] = torch.tensor(s)
        out = model(input_ids=ids, output_hidden_states=True)
        last = torch.tensor([len(s) - 1 for s in chunk])
        rows = torch.arange(len(chunk))
        preds.append(out.logits[rows, last].argmax(-1))
        resid.append(out.hidden_states[layer][rows, last])
    return torch.cat(preds), torch.cat(resid)


def _mean_cos(vecs: dict, pairs: list) -> float:
    sims = [torch.nn.functional.cosine_similarity(vecs[x], vecs[y], dim=0) for x, y in pairs]
    return float(torch.stack(sims).mean()) if sims else float("nan")


def measure(checkpoint: str | Path, layer: int, sp, translation: list[Probe],
            forms: list[tuple[str, str, str, list[int]]]) -> dict[str, float]:
    """All signals for one checkpoint (``layer`` is 1-based: the output of that block)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        preds, _ = _run(model, [p.ids for p in translation], layer)
        for kind in ("parallel", "mismatched", "gloss"):
            idx = [i for i, p in enumerate(translation) if p.kind == kind]
            hits = [float(preds[i] == translation[i].target) for i in idx]
            out[f"{kind}_acc"] = sum(hits) / max(1, len(hits))
            if kind == "parallel":
                out["chance"] = sum(translation[i].chance for i in idx) / max(1, len(idx))
        _, resid = _run(model, [f[3] for f in forms], layer)
    keys = [(c, lang, form) for c, lang, form, _ in forms]
    sums: dict[tuple, torch.Tensor] = {}
    counts: dict[tuple, int] = {}
    for key, r in zip(keys, resid):
        sums[key] = sums.get(key, 0) + r
        counts[key] = counts.get(key, 0) + 1
    vecs = {k: sums[k] / counts[k] for k in sums}
    centre = torch.stack(list(vecs.values())).mean(0)
    vecs = {k: v - centre for k, v in vecs.items()}
    main = {(c.id, "ja"): (c.id, "ja", c.ja[0]) for c in CONCEPTS}
    main |= {(c.id, "en"): (c.id, "en", c.en) for c in CONCEPTS}
    ids = [c.id for c in CONCEPTS]
    same = [(main[c, "ja"], main[c, "en"]) for c in ids]
    diff = [(main[x, "ja"], main[y, "en"]) for x, y in itertools.permutations(ids, 2)]
    var = [c for c in CONCEPTS if len(c.ja) > 1]
    vsame = [((c.id, "ja", c.ja[0]), (c.id, "ja", c.ja[1])) for c in var]
    vdiff = [((x.id, "ja", x.ja[0]), (y.id, "ja", y.ja[1])) for x, y in itertools.permutations(var, 2)]
    within = [(main[x, lang], main[y, lang]) for lang in ("ja", "en")
              for x, y in itertools.combinations(ids, 2)]
    out["cross_same"], out["cross_diff"] = _mean_cos(vecs, same), _mean_cos(vecs, diff)
    out["cross_gap"] = out["cross_same"] - out["cross_diff"]
    out["variant_same"], out["variant_diff"] = _mean_cos(vecs, vsame), _mean_cos(vecs, vdiff)
    out["variant_gap"] = out["variant_same"] - out["variant_diff"]
    out["lang_gap"] = _mean_cos(vecs, within) - out["cross_diff"]
    return {k: round(v, 4) for k, v in out.items()}


def measure_all(checkpoints: list[tuple[int, Path]], layer: int, tokenizer_dir: Path,
                seed: int, n_translation: int = 300, per_form: int = 6) -> list[dict]:
    """Signals for every ``(step, folder)``; probes drawn once from their own seed stream.

    ``tokenizer_dir`` is the toy's tokenizer folder (either kind; ids 1 and 3 are BOS and pad).
    """
    from llmjp_ckpt.toy.tokenizer import toy_encoder

    sp = toy_encoder(tokenizer_dir)
    translation = translation_probes(sp, seed + 1_000_003, n_translation)
    forms = form_probes(sp, seed + 2_000_003, per_form)
    rows = []
    with deterministic():
        for step, path in tqdm(checkpoints, desc="toy: learning signals", unit="ckpt"):
            rows.append({"step": step, **measure(path, layer, sp, translation, forms)})
    return rows
