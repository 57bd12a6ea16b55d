"""persona's pure model code: profiles, recommenders, engine. No Kafka, Faust or HTTP."""
