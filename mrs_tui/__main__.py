from mrs_tui.cli import main

raise SystemExit(main())
