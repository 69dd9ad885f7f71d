"""One customer's experience state: what the scoring worker keeps per customer, how a
touchpoint changes it, how two customers' states combine, and what is published about it."""
