"""Ray Serve deployments (validator, regime, sizer) and the app that composes them.
Arrives with the ML serving issue."""
