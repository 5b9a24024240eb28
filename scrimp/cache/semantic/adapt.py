"""Adapt the embedding model to "same question?" on labelled pairs, on the CPU.

CoSENT loss: within a batch, every duplicate pair should have a higher cosine than every non-duplicate
pair; it trains directly the ordering a threshold relies on. Only the top `train_layers` transformer
layers are trained: most of the gain for a fraction of the time, and the changed weights stay small
enough to ship (see `save_delta`)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np


def _model(model_dir: str | Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def adapt(model_dir: str | Path, texts_a: list[str], texts_b: list[str], labels: list[int], out_dir: str | Path,
          *, epochs: int = 1, batch_size: int = 32, lr: float = 2e-5, train_layers: int = 2, scale: float = 20.0,
          seed: int = 0, progress: bool = True) -> Path:
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    rnd = random.Random(seed)
    model = _model(model_dir)
    bert = model[0].auto_model
    layers = bert.encoder.layer
    for p in bert.parameters():
        p.requires_grad = False
    for layer in layers[len(layers) - train_layers:]:
        for p in layer.parameters():
            p.requires_grad = True
    params = [p for p in bert.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    order = list(range(len(labels)))
    steps = epochs * ((len(order) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(steps * 0.1, 1)) *
                                              max(0.0, 1 - s / steps))
    model.train()
    bar = tqdm(total=steps, desc="adapting embedder", unit="batch", disable=not progress)
    for _ in range(epochs):
        rnd.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            y = torch.tensor([labels[i] for i in idx], dtype=torch.float32)
            feats = model.tokenize([texts_a[i] for i in idx] + [texts_b[i] for i in idx])
            emb = model(feats)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb, dim=1)
            cos = (emb[:len(idx)] * emb[len(idx):]).sum(dim=1) * scale
            # CoSENT: log(1 + sum over (neg i, pos j) of exp(cos_i - cos_j))
            diff = cos[:, None] - cos[None, :]
            mask = (y[:, None] < y[None, :]).float()
            diff = diff - (1 - mask) * 1e12
            loss = torch.logsumexp(torch.cat([torch.zeros(1), diff.flatten()]), dim=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    out_dir = Path(out_dir)
    model.save(str(out_dir))
    return out_dir


def embed_with(model_dir: str | Path, texts: list[str], progress: bool = False) -> np.ndarray:
    model = _model(model_dir)
    return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=progress), np.float32)
