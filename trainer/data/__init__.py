"""The one reader of the inputs stage's shards, and what training draws from them.

`meta` (meta.json, the shard set, galleries, the digest, InputsFormatError), `pixels` (uint8
views of pixel columns, model normalisation), `tables` (query and image tables in memory),
`streaming` (pixels read batch by batch, for evaluation), `records` (pixels unpacked to a raw
file and read by row), `sources` (the train split made per batch from stored image files, its
visual queries drawn by a maker the caller hands in), `dataset` (the training Dataset),
`train_set` (the train split in memory, unpacked by the memory budget, or made from files),
`sampler` (batches from (seed, epoch)), `augment` (open_clip's training crop, per batch).
"""
