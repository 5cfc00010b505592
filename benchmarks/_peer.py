"""What the Trainer-peer benchmarks share."""

from __future__ import annotations


def predict_in_order(model, tokenizer, texts, pairs=None, *, max_length: int = 128, batch_size: int = 128):
    """The model's logits (n, K) for ``texts`` (and ``pairs``), rows in input order.

    Why not ``trainer.predict``: with ``train_sampling_strategy="group_by_length"`` its rows
    did not come back in file order here (chance-level scores, no error).
    """
    import numpy as np
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), list(pairs[i:i + batch_size]) if pairs is not None else None,
                            truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out)
