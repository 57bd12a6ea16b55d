"""Recommendation strategies behind one small interface (``base.Recommender``)."""
