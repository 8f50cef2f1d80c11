"""feepay's web layer: Flask app factory, blueprints, and the root `feepay` command."""
