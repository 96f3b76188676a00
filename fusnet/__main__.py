from fusnet.cli import main

raise SystemExit(main())
