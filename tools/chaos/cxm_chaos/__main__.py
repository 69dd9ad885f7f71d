from cxm_chaos.cli import main

raise SystemExit(main())
