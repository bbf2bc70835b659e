"""Every Qt widget, view and worker of Inception Explorer lives in this package."""
