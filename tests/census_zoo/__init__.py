"""Zoo ports dressed as census adapters: what CI runs the census on, since it cannot download
the public ports (tests/test_census.py). Their "sources" are empty files the test creates."""
