"""The shell: main window, actions, menus, settings, docks, status line, help."""
