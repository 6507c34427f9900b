import sys

from otel_neuron.cli import main

sys.exit(main())
