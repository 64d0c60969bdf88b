import triton

from gdkvm.ops._host import cdiv, next_power_of_2


def test_host_helpers_equal_triton() -> None:
    for n in range(0, 3000):
        assert next_power_of_2(n) == triton.next_power_of_2(n), n
        for d in (1, 3, 16, 64, 132):
            assert cdiv(n, d) == triton.cdiv(n, d), (n, d)
