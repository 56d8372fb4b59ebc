"""Ray runtime: thin actors around the domain classes (candle shards, strategies, risk,
trading service) and the wiring between them. Arrives with the Ray runtime issue; the
domain package `scalper` never imports anything from here."""
