from gdkvm.cli import main

raise SystemExit(main())
