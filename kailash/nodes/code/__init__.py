"""Node catalog package."""
