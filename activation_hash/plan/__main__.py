import sys

from activation_hash.plan import main

sys.exit(main())
