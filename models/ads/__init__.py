"""Ads: click and conversion prediction (pCTR) and bidding (budgets, pacing, auction)."""
