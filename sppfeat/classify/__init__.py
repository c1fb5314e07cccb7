"""Linear SVMs on feature files: train/test splits (split), the SVM solver (svm), scores (metrics),
`train_svm` (training) and `evaluate` (evaluation)."""
