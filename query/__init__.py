"""Reading the store: training, classify, similar, evaluation, export, reports."""
