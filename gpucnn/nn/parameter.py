"""``Parameter``: a trainable array of a module and its gradient, as
``torch.nn.Parameter``'s ``.data`` and ``.grad``.

A Parameter does not own its arrays: it is a handle on one entry of its
module's tables, so ``.data`` is always the module's current array (after
``model.to("cuda")`` or ``load_state_dict`` too) and ``.grad`` the gradient
that the module's last ``backward`` set, or None.
"""
from __future__ import annotations


class Parameter:
    """Handle on parameter ``key`` of ``module``.

    data: the array (NumPy or CuPy, the module's backend); assigning replaces it.
    grad: the gradient of the same shape set by the last backward, or None
        before any backward and after ``zero_grad()``; assigning replaces it.
    """

    __slots__ = ("_module", "_key")

    def __init__(self, module, key: str):
        self._module, self._key = module, key

    @property
    def data(self):
        """The parameter's array in its module."""
        return self._module._params[self._key]

    @data.setter
    def data(self, value):
        self._module._params[self._key] = value

    @property
    def grad(self):
        """The gradient the module's last backward set, or None."""
        return self._module._grads.get(self._key)

    @grad.setter
    def grad(self, value):
        if value is None:
            self._module._grads.pop(self._key, None)
        else:
            self._module._grads[self._key] = value

    @property
    def shape(self) -> tuple:
        """The array's shape."""
        return tuple(self.data.shape)

    @property
    def dtype(self):
        """The array's dtype."""
        return self.data.dtype

    def __repr__(self):
        return f"Parameter({type(self._module).__name__}.{self._key}, shape={self.shape}, dtype={self.dtype})"
