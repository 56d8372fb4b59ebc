"""Ray Data + Ray Train jobs that build the ML datasets and train the three models.
Arrives with the ML training issue."""
