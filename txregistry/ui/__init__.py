"""
The built-in web UI (C{ui.enabled}): read-only pages at C{/ui/}, rendered
on the server with C{twisted.web.template}, through the registry contract
and behind the API's guard. Imported only when the UI is enabled.
"""

from txregistry.ui.page import Shared
from txregistry.ui.resource import UIResource

__all__ = ["Shared", "UIResource"]
