"""Pictures and pages for people: thumbnails, focal-plane pictures, look-alike galleries, the evaluation
report, and the text and pictures ``vec classify`` and ``vec similar`` print or write."""
