"""Ray jobs of the ML pipeline: the dataset collector as Ray tasks (collect.py) and Ray Train
XGBoost training of the validator, regime and sizer models into the registry (xgb.py)."""
