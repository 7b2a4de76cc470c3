using System.Buffers.Binary;
using System.Text;

namespace Poold.Protocol;

/// <summary>
/// A growable buffer for the messages Poold writes itself: <see cref="Begin"/> reserves the length, <see cref="End"/>
/// patches it. Reused per connection; never on the relay path, which forwards the peers' own bytes.
/// </summary>
internal sealed class MessageBuffer
{
    private byte[] _buffer;
    private int _length;
    private int _lengthAt = -1;

    public MessageBuffer(int capacity = 256) => _buffer = new byte[capacity];

    public ReadOnlyMemory<byte> Written => _buffer.AsMemory(0, _length);

    public int Length => _length;

    /// <summary>Bytes the buffer holds now; it grows as messages are written.</summary>
    public int Capacity => _buffer.Length;

    public void Clear()
    {
        _length = 0;
        _lengthAt = -1;
    }

    /// <summary>
    /// Clears the buffer and drops its storage, for an owner that is done with it for a long while (a session after its
    /// login: thousands of idle clients would otherwise each keep the bytes of their welcome). It grows again if used.
    /// </summary>
    public void ReleaseStorage()
    {
        Clear();
        _buffer = [];
    }

    /// <summary>Starts a typed message: the type byte, then a length patched by <see cref="End"/>.</summary>
    public MessageBuffer Begin(byte code)
    {
        WriteByte(code);
        return BeginUntyped();
    }

    /// <summary>Starts an untyped packet (StartupMessage, SSLRequest, CancelRequest): length only.</summary>
    public MessageBuffer BeginUntyped()
    {
        _lengthAt = _length;
        WriteInt32(0);
        return this;
    }

    public MessageBuffer End()
    {
        BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_lengthAt), _length - _lengthAt);
        _lengthAt = -1;
        return this;
    }

    public MessageBuffer WriteByte(byte value)
    {
        Ensure(1);
        _buffer[_length++] = value;
        return this;
    }

    public MessageBuffer WriteInt16(short value)
    {
        Ensure(2);
        BinaryPrimitives.WriteInt16BigEndian(_buffer.AsSpan(_length), value);
        _length += 2;
        return this;
    }

    public MessageBuffer WriteInt32(int value)
    {
        Ensure(4);
        BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_length), value);
        _length += 4;
        return this;
    }

    public MessageBuffer WriteBytes(ReadOnlySpan<byte> bytes)
    {
        Ensure(bytes.Length);
        bytes.CopyTo(_buffer.AsSpan(_length));
        _length += bytes.Length;
        return this;
    }

    /// <summary>A C string: UTF-8 bytes then a NUL.</summary>
    public MessageBuffer WriteCString(string value)
    {
        var count = Encoding.UTF8.GetByteCount(value);
        Ensure(count + 1);
        _length += Encoding.UTF8.GetBytes(value, _buffer.AsSpan(_length));
        _buffer[_length++] = 0;
        return this;
    }

    private void Ensure(int extra)
    {
        if (_length + extra > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + extra));
        }
    }
}
