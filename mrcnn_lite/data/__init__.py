"""COCO-format data: the synthetic shapes generator, mask codecs, the dataset, transforms and loaders."""
