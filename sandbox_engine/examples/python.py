import time
print("Program started")
name = input("Enter your name: ")
print("Hello", name)
for i in range(5):
    time.sleep(1)
    print(i)
