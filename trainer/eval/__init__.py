"""Evaluation as one flow: embed(model, split) -> features, rank -> rankings, score -> metrics.

`split` (a split's queries, gallery and index maps), `embed` (gallery features, f_t / f_v and
f_q by the model's own fuse), `rank` (the one exact ranking with one tie rule: target ranks,
top-n ids, CIRR subset rankings), `protocols` (R@K, caption hits, Rsubset@K + Avg, CIRR
submission files, chosen by registry), `index` (embeddings + FAISS for search). The evaluate
stage, validation during training, training-free scores, the index stage and `dqu search` all
call these; nothing here imports the training loop.
"""
