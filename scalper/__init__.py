"""scalper: intraday scalping on Ray. The domain package never imports ray."""
