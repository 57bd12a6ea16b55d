"""persona's pure model code, by area (recommenders, ads, users, marketing) and the
per-event engine. No Kafka, Faust or HTTP."""
