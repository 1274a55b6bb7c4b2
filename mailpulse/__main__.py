from mailpulse.cli import main

raise SystemExit(main())
