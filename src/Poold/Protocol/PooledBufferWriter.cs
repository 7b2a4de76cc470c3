using System.Buffers;

namespace Poold.Protocol;

/// <summary>
/// A growable buffer whose array is rented from <see cref="ArrayPool{T}.Shared"/> while bytes are written and given
/// back by <see cref="Clear"/>: an idle session holds no buffer (ten thousand idle clients cost no more than their
/// sockets), and a busy one takes the same few arrays round from the pool's per-thread cache.
/// </summary>
internal sealed class PooledBufferWriter : IBufferWriter<byte>
{
    private const int MinimumSize = 1024;

    /// <summary>Past this size (one large message) arrays come from the heap and go back to the collector, not to the pool (see <see cref="ContiguousPipeReader"/>).</summary>
    private const int MaxPooled = 1 << 20;

    private byte[]? _array;
    private int _written;

    public int WrittenCount => _written;

    public ReadOnlyMemory<byte> WrittenMemory => _array is null ? ReadOnlyMemory<byte>.Empty : _array.AsMemory(0, _written);

    public ReadOnlySpan<byte> WrittenSpan => _array is null ? [] : _array.AsSpan(0, _written);

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (_array is null || _written + count > _array.Length)
        {
            throw new InvalidOperationException("advanced past the end of the buffer");
        }

        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _array.AsMemory(_written);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _array.AsSpan(_written);
    }

    /// <summary>Forgets what was written and gives the array back to the pool.</summary>
    public void Clear()
    {
        _written = 0;
        if (_array is { } array)
        {
            _array = null;
            Return(array);
        }
    }

    [System.Diagnostics.CodeAnalysis.MemberNotNull(nameof(_array))]
    private void Ensure(int sizeHint)
    {
        var needed = _written + Math.Max(sizeHint, 1);
        if (_array is not null && needed <= _array.Length)
        {
            return;
        }

        var size = Math.Max(needed, _array is null ? MinimumSize : _array.Length * 2);
        var grown = size <= MaxPooled ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);
        if (_array is { } old)
        {
            old.AsSpan(0, _written).CopyTo(grown);
            Return(old);
        }

        _array = grown;
    }

    private static void Return(byte[] array)
    {
        if (array.Length <= MaxPooled)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
