"""tripwire's engine: circuit breakers as trio actors.

::

    async with open_circuit_breakers(load_config("config.toml")) as manager:
        breaker = await manager.get_circuit_breaker("database")
        rows = await breaker.execute(db.fetch, "select 1")
"""

from ._breaker import CircuitBreaker as CircuitBreaker
from ._config import CircuitBreakerConfig as CircuitBreakerConfig
from ._config import Config as Config
from ._config import Profile as Profile
from ._config import ServerConfig as ServerConfig
from ._config import Settings as Settings
from ._config import config_to_builtins as config_to_builtins
from ._config import load_config as load_config
from ._config import parse_circuitbreaker as parse_circuitbreaker
from ._config import parse_config as parse_config
from ._config import parse_profile as parse_profile
from ._config import validate_service_name as validate_service_name
from ._duration import Duration as Duration
from ._exceptions import CircuitBreakerError as CircuitBreakerError
from ._exceptions import CircuitOpenError as CircuitOpenError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import ForceRefusedError as ForceRefusedError
from ._exceptions import OperationTimeoutError as OperationTimeoutError
from ._exceptions import Problem as Problem
from ._exceptions import UnknownServiceError as UnknownServiceError
from ._manager import FORCE_ACTIONS as FORCE_ACTIONS
from ._manager import CircuitBreakerManager as CircuitBreakerManager
from ._manager import open_circuit_breaker as open_circuit_breaker
from ._manager import open_circuit_breakers as open_circuit_breakers
from ._policy import State as State
from ._stats import Stats as Stats

__version__ = "0.1.0"

__all__ = [
    "FORCE_ACTIONS",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerManager",
    "CircuitOpenError",
    "Config",
    "ConfigError",
    "Duration",
    "ForceRefusedError",
    "OperationTimeoutError",
    "Problem",
    "Profile",
    "ServerConfig",
    "Settings",
    "State",
    "Stats",
    "UnknownServiceError",
    "config_to_builtins",
    "load_config",
    "open_circuit_breaker",
    "open_circuit_breakers",
    "parse_circuitbreaker",
    "parse_config",
    "parse_profile",
    "validate_service_name",
]
