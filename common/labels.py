"""The observed-label sentinel every stage shares: -1 = survival unknown (neither died nor survived is known).

It sits on the ground floor so that ingest and impute need not import the TFRecord schema (and with it the
image resize) to say "no label"; editing the resize then re-runs only the stages that store images.
"""

NO_LABEL = -1
