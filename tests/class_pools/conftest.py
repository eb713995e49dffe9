import os
import sys

# The toy runs and the replica script import `toy_runs` from this folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
