"""`python -m mlops_pipeline.cli` is `mlops-pipeline`."""

import sys

from mlops_pipeline.cli import main

sys.exit(main())
