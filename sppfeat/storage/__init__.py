"""Every file format sppfeat writes: feature files (feature_file), SVM model files (model_file),
the crash-safe progress folder of a running extraction (progress), merged shard files (merge),
and what they share (hdf5)."""
