"""The explorer's state and the tasks behind the window, Qt-free."""
