"""The Store facade, in pieces: each mixin gives ``Store`` one group of public methods.

Every mixin works on ``self.parts`` only (declared in :class:`~castore.facade.base.StoreBase`)
and delegates to the handles and operations below; ``castore/store.py`` composes them and owns
opening and closing.
"""
