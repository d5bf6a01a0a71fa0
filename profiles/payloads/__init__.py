"""One builder per Apple payload type, with Apple's exact key names.

Builders take a ``Namer`` (profile identifier + UUID, from which payload ids
are derived) and a blueprint section, and return payload dicts.
"""
